"""robench's built-in plugins (installed as ``robench_plugins``).

Each subpackage is one plugin module whose ``@hookimpl`` functions register the
components of one kind, exactly as a third-party plugin package does.
"""
