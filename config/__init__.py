"""The shipped configuration, installed as package data of ``stackcue.config``.

``default.toml`` is read with :mod:`importlib.resources`, so a wheel install
finds it as well as a clone; the systemd units and the mosquitto files ship
beside it for ``make install``.
"""
