"""The GraphQL gateway (strawberry): one schema over the services' REST APIs, owning no data. Being
built: the unified journey view so far (schema.py)."""
