"""Contract tests (see contract_helpers.py): the role directories below
import ``contract_helpers`` from here."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
