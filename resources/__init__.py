"""Icons and other files the UI loads at run time (a package so wheels ship them).

Load them with :mod:`ui.icons`, which finds this folder from a source checkout, an
installed wheel and a PyInstaller bundle alike.
"""
