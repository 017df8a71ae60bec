"""The GraphQL gateway (strawberry): one schema over the services' REST APIs. It arrives with its
own issue; nothing runs here yet."""
