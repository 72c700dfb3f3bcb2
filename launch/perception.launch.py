"""ros2 launch road_seg_ros perception.launch.py [params_file:=...] [model:=...] [use_sim_time:=true]
[namespace:=...] [with_sim:=true] [rviz:=true] [dds_profile:=default|none|FILE]

The processes come from road_seg_core.launch_plan, which the demo and the tests use too. The launch ends when
perception_node does (e.g. it cannot load its model), so nothing is left running without it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from road_seg_core.launch_plan import PACKAGE, config_dir, perception_plan

ARGUMENTS = {
    "params_file": ("", "node parameters file (default: the installed config/perception.yaml)"),
    "model": ("", "checkpoint path (default: the parameters file's, else the bundled model)"),
    "use_sim_time": ("false", "use /clock, e.g. with `road-seg play --clock` or `ros2 bag play --clock`"),
    "namespace": ("", "namespace of the perception node"),
    "with_sim": ("false", "also start sim_sensors (synthetic ZED + Boson)"),
    "rviz": ("false", "also start rviz2 with config/perception.rviz (where rviz2 is installed)"),
    "dds_profile": ("default", "Fast DDS profile of the started processes: default = config/fastdds_large_images.xml "
                               "(shared memory for 720p images; unless FASTRTPS_DEFAULT_PROFILES_FILE is set), none, "
                               "or a file"),
}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _rviz_installed() -> bool:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return False
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return True


def _rviz(use_sim_time: bool) -> list:
    config = str(config_dir() / "perception.rviz")
    if not _rviz_installed():
        return [LogInfo(msg=f"rviz:=true: rviz2 is not installed here (no rviz2 package in the ament index); "
                            f"not starting it. Run `rviz2 -d {config}` on a machine with ROS 2 on the same "
                            f"ROS_DOMAIN_ID instead")]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config],
                 parameters=[{"use_sim_time": use_sim_time}], output="screen")]


def _nodes(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    use_sim_time = _truthy(arg["use_sim_time"])
    plan = perception_plan(params_file=arg["params_file"], model=arg["model"], use_sim_time=use_sim_time,
                           namespace=arg["namespace"], with_sim=_truthy(arg["with_sim"]),
                           dds_profile=None if arg["dds_profile"] == "default" else arg["dds_profile"])
    actions = [Node(package=PACKAGE, executable=p.executable, name=p.name, namespace=p.namespace or None,
                    parameters=[*p.params_files, p.parameters], output="screen", emulate_tty=True,
                    additional_env=p.env or None,
                    on_exit=Shutdown(reason=f"{p.name} exited") if p.executable == "perception_node" else None)
               for p in plan]
    if _truthy(arg["rviz"]):
        actions += _rviz(use_sim_time)
    return actions


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
