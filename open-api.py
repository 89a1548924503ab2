#!/usr/bin/env python3
"""Start the gateway: python open-api.py [--config PATH] [--host HOST] [--port PORT] [--workers N]."""

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
