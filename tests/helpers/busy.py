"""Spins a core until killed."""
while True:
    pass
