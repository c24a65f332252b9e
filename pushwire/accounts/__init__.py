"""Console users, roles and tenant memberships."""
