"""A local Salesforce API emulator (HTTPS) for development, demos and tests.

Start one with ``sf-activations emulator`` or, in Python, ``testing.running_emulator()``;
``server.Emulator`` holds its state and ``server.EmulatorServer`` serves it.
"""
