-- Lmod: `module use modules` would also list the Tcl twin of pgti as "tcl/pgti"; hide it
-- there (it stays loadable). `module use modules/tcl` (Environment Modules or Lmod) is unaffected.
hide_version("tcl/pgti/0.1.0")
