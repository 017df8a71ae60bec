"""Mutations: the services' writes through the gateway, with the caller's own token.

Every create is a POST under an `Idempotency-Key` (services/common/idempotency.py): the client's
`idempotencyKey`, or one derived from the caller, the mutation and its arguments. Sending the same
mutation again (a retry after an answer was lost) then returns the first answer instead of storing a
second row, and a key sent again with other arguments is the service's 409. The services keep keys
48 h (`IDEMPOTENCY_TTL_HOURS`): within that time a derived key makes two identical creates one
(re-creating a deleted persona with the same input returns the deleted one), so a client that means a
second identical create passes its own key.
`submitResponse` derives none: identical answers of two people are two responses; its `responseId` or
a client key makes its retries safe. Updates are PATCHes: the same values set again change nothing,
so they take no key. They take no version either: the services check none (no `If-Match`), the last
change wins. Deletes answer `Deleted { id }`; one sent again is the service's 404, nothing being left.

A service's problem is the mutation's error (`ServiceError`: service, status, the problem with its
field errors). The gateway keeps nothing: the keys, like the rows, are the services'.
"""

from __future__ import annotations

from strawberry.tools import merge_types

from gateway.mutations.feedback import FeedbackMutation
from gateway.mutations.modelling import ModellingMutation

Mutation = merge_types("Mutation", (ModellingMutation, FeedbackMutation))

__all__ = ["Mutation"]
