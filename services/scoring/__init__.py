"""The scoring service: a read model fed by journey and feedback events (touchpoint scores,
portfolio, moments of truth, journey health). It arrives with its own issue; nothing runs here yet."""
