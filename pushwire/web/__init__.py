"""HTTP plumbing shared by every controller: the spec's error body, health and readiness."""
