"""The scoring maths: pure functions of numpy arrays (no database, no I/O), each tested against published
numbers or an independent implementation."""
