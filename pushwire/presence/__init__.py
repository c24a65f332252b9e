"""Presence routes (app, user → instance, transport): written by the hub, read by the API and console."""
