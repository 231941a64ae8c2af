"""``stackcue serve``: the runner's phone page on the Pi (docs/serve.md).

``app`` (Starlette routes and the guard), ``relay`` (one MQTT client relayed to every open page as Server-Sent
Events), ``auth`` (password, cookie key, CSRF, login rate limit), ``certs`` (the CA and server certificate of
``stackcue certs``), ``cli`` (the two subcommands). Imported only by those subcommands, so the daemon and the
other commands never load Starlette, uvicorn or cryptography.
"""
