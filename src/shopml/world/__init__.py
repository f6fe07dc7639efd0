"""A seeded synthetic retail world (catalog, images, street photos, sales, users, events) and readers.

Entry points: :func:`shopml.world.generate.generate_world` writes a world directory;
:mod:`shopml.formats.readers` reads and validates one (also the way users bring their own data);
:mod:`shopml.world.describe` summarises one. docs/data.md describes every file and column.
"""
