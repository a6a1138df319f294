"""Events the engine publishes, and the bus that delivers them (engine -> UI / hooks)."""
