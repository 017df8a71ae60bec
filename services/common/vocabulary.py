"""Domain words every service uses the same way (events and REST carry them between services)."""

from __future__ import annotations

import enum


class Channel(enum.StrEnum):
    """Where a customer meets a touchpoint."""

    web = "web"
    app = "app"
    email = "email"
    phone = "phone"
    chat = "chat"
    store = "store"
    social = "social"
    print = "print"
    event = "event"
    partner = "partner"
    other = "other"
