"""Orders consumes nothing yet (payment outcomes and basket validation come with issue 4)."""

from cagette_runtime.consumer import Consumer


def consumers(service) -> list[Consumer]:  # type: ignore[no-untyped-def]
    return []
