# Finds utf8proc (Debian: libutf8proc-dev, which ships no CMake package) and defines the imported
# target dm2s2::utf8proc. Used by the build and by the installed package configuration.
if(NOT TARGET dm2s2::utf8proc)
  find_path(DM2S2_UTF8PROC_INCLUDE_DIR utf8proc.h)
  find_library(DM2S2_UTF8PROC_LIBRARY NAMES utf8proc)
  if(DM2S2_UTF8PROC_INCLUDE_DIR AND DM2S2_UTF8PROC_LIBRARY)
    add_library(dm2s2::utf8proc UNKNOWN IMPORTED)
    set_target_properties(dm2s2::utf8proc PROPERTIES
      IMPORTED_LOCATION "${DM2S2_UTF8PROC_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${DM2S2_UTF8PROC_INCLUDE_DIR}")
  endif()
endif()
