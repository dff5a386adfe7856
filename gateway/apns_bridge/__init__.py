"""Relay of kind-``apns`` notifications to Apple (or a stand-in such as a mock).

client.py   one HTTP/2 connection to Apple (h2 over asyncio, sans-IO driven)
pool.py     connections per (team, key, environment), stream-limit aware
signer.py   ES256 provider JWTs, one per key, shared across connections
keyvault.py .p8 keys encrypted at rest
sender.py   the durable relay worker (claims leased rows from the store)
"""
