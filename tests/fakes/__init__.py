"""Fake upstreams: each speaks one provider's real wire protocol on loopback.

Every fake is proven faithful by pointing that provider's official SDK at it
(`tests/test_fake_*.py`).
"""
