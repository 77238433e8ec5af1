"""Fixtures shared by the tests; plain helpers are in helpers.py."""

import copy

import pytest
from helpers import TINY


@pytest.fixture
def tiny_config_dict():
    return copy.deepcopy(TINY)
