"""The sync engine: finds work, claims it with leases, moves and verifies bytes."""
