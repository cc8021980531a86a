"""Helpers shared by the test suites: real servers started on free ports in temp dirs."""
