"""The signed server API (spec section 2): push, batch, presence and history."""
