"""riskcast: probability of default for trade-credit customers and the credit decisions that follow.

Importing this package does no work: configuration, telemetry switches and tracking URIs are
set by the entry points (`riskcast.cli`, the service) so that library users stay in control.
"""

__version__ = "0.1.0"
