"""Events the feedback service publishes (subject -> the aggregate's public state in `data`), past tense.

Every event names its aggregate (`aggregate_id`) and that aggregate's version after the change:
a response is version 1 when submitted and 2 once its comment is analysed; a survey's version is its
`revision`; a settings event's aggregate is the workspace, an opt-out's the customer's external id.
A deleted aggregate's last event carries its last state with version + 1. No event carries a
webhook's secret.
"""

from __future__ import annotations

from pydantic import BaseModel

from services.feedback.models import (
    CasePublic,
    OptOutPublic,
    ResponsePublic,
    RulePublic,
    SurveyPublic,
    WebhookPublic,
    WorkspaceSettingsPublic,
)

SURVEY_CREATED = "feedback.survey.created"
SURVEY_UPDATED = "feedback.survey.updated"
RESPONSE_SUBMITTED = "feedback.response.submitted"
COMMENT_ANALYSED = "feedback.comment.analysed"
CASE_OPENED = "feedback.case.opened"
CASE_UPDATED = "feedback.case.updated"
CASE_CLOSED = "feedback.case.closed"
RULE_CREATED = "feedback.loop_rule.created"
RULE_UPDATED = "feedback.loop_rule.updated"
RULE_DELETED = "feedback.loop_rule.deleted"
WEBHOOK_CREATED = "feedback.webhook.created"
WEBHOOK_UPDATED = "feedback.webhook.updated"
WEBHOOK_DELETED = "feedback.webhook.deleted"
SETTINGS_UPDATED = "feedback.settings.updated"
OPT_OUT_ADDED = "feedback.opt_out.added"
OPT_OUT_WITHDRAWN = "feedback.opt_out.withdrawn"

PUBLISHED: dict[str, type[BaseModel]] = {
    SURVEY_CREATED: SurveyPublic,
    SURVEY_UPDATED: SurveyPublic,
    RESPONSE_SUBMITTED: ResponsePublic,
    COMMENT_ANALYSED: ResponsePublic,
    CASE_OPENED: CasePublic,
    CASE_UPDATED: CasePublic,
    CASE_CLOSED: CasePublic,
    RULE_CREATED: RulePublic,
    RULE_UPDATED: RulePublic,
    RULE_DELETED: RulePublic,
    WEBHOOK_CREATED: WebhookPublic,
    WEBHOOK_UPDATED: WebhookPublic,
    WEBHOOK_DELETED: WebhookPublic,
    SETTINGS_UPDATED: WorkspaceSettingsPublic,
    OPT_OUT_ADDED: OptOutPublic,
    OPT_OUT_WITHDRAWN: OptOutPublic,
}
