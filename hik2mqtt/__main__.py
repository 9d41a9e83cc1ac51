"""``python -m hik2mqtt``: the same as the ``hik2mqtt`` command."""

import sys

from hik2mqtt.cli import main

sys.exit(main())
