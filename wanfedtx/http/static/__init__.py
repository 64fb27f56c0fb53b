"""Static files shipped in the package and served by the agent's HTTP API."""
