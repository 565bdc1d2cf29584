"""The daemon's consensus services (ARCHITECTURE.md §1, §4): chain import, VDF, producer, attester,
evidence reporter.

Each service is a trio service (`async def run(self, *, task_status=...)`) that gets its collaborators
through the small Protocols of `linguachaind.services.interfaces`, so tests run them with a real store
in a tmp dir and a fake clock. Must not: be imported by anything but the daemon's wiring and tests.
"""
