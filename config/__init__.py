"""The shipped configuration, installed as package data of ``stackcue.config``.

``default.toml`` is generated from the key declarations in
``service.settings`` (``python -m stackcue.service.settings``): the commented
file a runner copies and edits. It is found with :mod:`importlib.resources`,
so a wheel install finds it as well as a clone; the systemd units and the
mosquitto files ship beside it for ``make install``.
"""
