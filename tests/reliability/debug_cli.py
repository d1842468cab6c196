"""The ``twilio-studio`` command with every logger at DEBUG, the root logger included.

    python tests/reliability/debug_cli.py run --pipelines-dir ... (any CLI arguments)

With ``RUNTIME__LOG_LEVEL=DEBUG`` in the environment dlt logs at DEBUG too: the secrets test runs
loads through this and searches everything they print and write.
"""

from __future__ import annotations

import logging
import sys

logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)

from twilio_studio.cli import main  # noqa: E402  (logging first: the CLI's basicConfig is then a no-op)

if __name__ == "__main__":
    sys.exit(main(["--log-level", "DEBUG", *sys.argv[1:]]))
