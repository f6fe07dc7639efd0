"""Small helpers shared by every part: devices, atomic I/O, checkpoints, seeding."""
