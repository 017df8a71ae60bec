"""Every query of the journey service, one module per area; handlers import the module they need."""
