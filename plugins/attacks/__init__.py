"""Built-in attacks plugin: library adapters from the catalogue, plus the papers' attacks.

Registration imports :mod:`robench_plugins.attacks.library`, which reads only
``catalogue.json``; torch and the attack libraries are imported when an attack runs.
"""

from robench import hookimpl


@hookimpl
def robench_register_attacks(register):
    """Register every catalogued library attack and the custom attacks."""
    from .library import COMPONENTS

    for cls in COMPONENTS:
        register(cls)
