"""The kit every journeygraph service uses and no service owns.

db, outbox and broker, auth, problem+json errors, idempotency, pagination, telemetry.
It imports no service package.
"""
