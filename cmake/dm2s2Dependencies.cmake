# Finds a dependency of dm2s2 at any version dm2s2 supports. The packages' own version files accept
# only their major version (Eigen 3.4's rejects a request for 5, xsimd 8's one for 14), so the package
# is found without a version and the range is checked here, with a message naming what was found
# where.
#   dm2s2_find_dependency(NAME MIN BELOW [find_package arguments...])
# accepts MIN <= version < BELOW. In dm2s2's own build a version outside the range is a fatal error; in
# the installed package (DM2S2_DEPENDENCY_CHECK_IN_CONFIG set) it makes find_package(dm2s2) fail with
# that message.
macro(dm2s2_find_dependency name min below)
  find_package(${name} CONFIG ${ARGN})
  if(${name}_FOUND AND (${name}_VERSION VERSION_LESS ${min} OR NOT ${name}_VERSION VERSION_LESS ${below}))
    set(_dm2s2_dependency_message
      "dm2s2 supports ${name} from ${min} up to, not including, ${below}; found ${${name}_VERSION} in ${${name}_DIR}")
    if(DM2S2_DEPENDENCY_CHECK_IN_CONFIG)
      set(dm2s2_FOUND FALSE)
      set(dm2s2_NOT_FOUND_MESSAGE "${_dm2s2_dependency_message}")
      return()
    endif()
    message(FATAL_ERROR "${_dm2s2_dependency_message}")
  endif()
  if(DM2S2_DEPENDENCY_CHECK_IN_CONFIG AND NOT ${name}_FOUND)
    set(dm2s2_FOUND FALSE)
    set(dm2s2_NOT_FOUND_MESSAGE "dm2s2 needs ${name} ${min} or later (below ${below})")
    return()
  endif()
endmacro()

# The ranges dm2s2 is tested with: the oldest in Debian bookworm, the newest in Debian unstable,
# vcpkg and Conan.
set(DM2S2_EIGEN_VERSIONS 3.4 6)
set(DM2S2_XSIMD_VERSIONS 8 15)
set(DM2S2_NLOHMANN_JSON_VERSIONS 3.11 3.13)
set(DM2S2_XTENSOR_VERSIONS 0.24 0.28)
