"""Every query of the feedback service, workspace-scoped, keyword-only, never committing."""
