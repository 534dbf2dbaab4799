"""A real Synapse homeserver for the test suite, run as a separate process.

matrix-synapse is AGPL-3.0 and a test-only dependency: it is only ever started as
`python -m synapse.app.homeserver`, never imported by test code or by the bot.
"""

from tests.matrix_server.synapse import (
    RegisteredUser,
    SynapseAPIError,
    SynapseServer,
    SynapseStartError,
)

__all__ = ["RegisteredUser", "SynapseAPIError", "SynapseServer", "SynapseStartError"]
