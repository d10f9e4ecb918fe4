"""Built-in attacks plugin: library adapters from the catalogue, plus the papers' attacks.

Registration imports :mod:`robench_plugins.attacks.library`, which reads only
``catalogue.json``; torch and the attack libraries are imported when an attack runs.
The hand-written attacks (Galloway et al. 2018) are ``pixel_swap``, ``fooling_images``,
``l0_weights`` and ``jsma`` (Table 2 glue over a library's JSMA); ``high_confidence`` is
Tanay & Griffin (2016)'s calibrated high-confidence targeted attack. Not components:
:mod:`.catalogue` (generates ``catalogue.json``) and :mod:`.masking` (gradient-masking
probes for ``robench doctor``).
"""

from robench import hookimpl


@hookimpl
def robench_register_attacks(register):
    """Register every catalogued library attack and the custom attacks."""
    from .fooling import FoolingImages
    from .high_confidence import HighConfidence
    from .jsma import JSMA
    from .l0_weights import L0Weights
    from .library import COMPONENTS
    from .pixel_swap import PixelSwap

    for cls in (*COMPONENTS, PixelSwap, FoolingImages, L0Weights, JSMA, HighConfidence):
        register(cls)
