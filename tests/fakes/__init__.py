"""Loopback stand-ins for the services the chat adapters talk to (Discord, arXiv), for the real client libraries."""
