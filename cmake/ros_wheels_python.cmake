# Lets colcon build against the ROS 2 wheels from PyPI without root.
#
# The wheels' exported CMake targets (<pkg>::<pkg>__rosidl_generator_py) carry their build
# machine's Python paths (/opt/python/cp311-cp311/include/python3.11 and .../site-packages/numpy/
# _core/include); CMake refuses to generate when a target uses an imported target whose include
# directory does not exist. Loaded for every package of a workspace with
#   colcon build --cmake-args -DCMAKE_PROJECT_INCLUDE=<this file> -DPython3_EXECUTABLE=<python>
# it defers to the end of the package's top-level CMakeLists.txt and points each such missing
# include directory at the Python and NumPy headers of Python3_EXECUTABLE. Paths that exist (a
# ROS installation, or a machine that has /opt/python) are left alone, so the file is harmless there.
if(CMAKE_VERSION VERSION_LESS 3.19)
  message(FATAL_ERROR "ros_wheels_python: CMake >= 3.19 needed (cmake_language(DEFER))")
endif()

function(_ros_wheels_python_fix_imported_targets)
  set(_python "${Python3_EXECUTABLE}")
  if(NOT _python)
    find_program(_python NAMES python3 python REQUIRED)
  endif()
  execute_process(
    COMMAND "${_python}" -c "import sysconfig, numpy; print(sysconfig.get_paths()['include']); print(numpy.get_include())"
    OUTPUT_VARIABLE _out RESULT_VARIABLE _rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(WARNING "ros_wheels_python: ${_python} cannot import numpy; wheel include paths left as they are")
    return()
  endif()
  string(REPLACE "\n" ";" _out "${_out}")
  list(GET _out 0 _python_include)
  list(GET _out 1 _numpy_include)
  get_property(_targets DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  set(_fixed 0)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_new "")
    set(_changed FALSE)
    foreach(_dir IN LISTS _dirs)
      if(NOT EXISTS "${_dir}" AND _dir MATCHES "/site-packages/numpy/")
        set(_dir "${_numpy_include}")
        set(_changed TRUE)
      elseif(NOT EXISTS "${_dir}" AND _dir MATCHES "/include/python3\\.[0-9]+$")
        set(_dir "${_python_include}")
        set(_changed TRUE)
      endif()
      list(APPEND _new "${_dir}")
    endforeach()
    if(_changed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_new}")
      math(EXPR _fixed "${_fixed} + 1")
    endif()
  endforeach()
  if(_fixed)
    message(STATUS "ros_wheels_python: ${_fixed} imported targets now use ${_python_include} and ${_numpy_include}")
  endif()
endfunction()

# CMAKE_PROJECT_INCLUDE runs after every project() call; fix each directory once, at its end.
get_property(_ros_wheels_python_deferred DIRECTORY PROPERTY _ROS_WHEELS_PYTHON_DEFERRED)
if(NOT _ros_wheels_python_deferred)
  set_property(DIRECTORY PROPERTY _ROS_WHEELS_PYTHON_DEFERRED TRUE)
  cmake_language(DEFER CALL _ros_wheels_python_fix_imported_targets)
endif()
