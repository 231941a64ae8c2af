"""``stackcue serve``: the runner's phone page on the Pi (docs/serve.md).

``app`` (Starlette routes and the guard), ``relay`` (one MQTT client relayed to every open page as Server-Sent
Events), ``auth`` (password, cookie key, CSRF, login rate limit), ``certs`` (the CA and server certificate of
``stackcue certs``), ``cli`` (the two subcommands). The coach's hub (service/hub/) is built from the same pieces.
Imported only by those subcommands and `stackcue hub`, so the daemon and the other commands never load Starlette,
uvicorn or cryptography.
"""
