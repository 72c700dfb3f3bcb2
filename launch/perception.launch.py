"""ros2 launch road_seg_ros perception.launch.py [params_file:=...] [model:=...] [use_sim_time:=true]
[namespace:=...] [with_sim:=true]

The processes come from road_seg_core.launch_plan, which the demo and the tests use too.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from road_seg_core.launch_plan import PACKAGE, perception_plan

ARGUMENTS = {
    "params_file": ("", "node parameters file (default: the installed config/perception.yaml)"),
    "model": ("", "checkpoint path (default: the parameters file's, else the bundled model)"),
    "use_sim_time": ("false", "use /clock, e.g. with `ros2 bag play --clock`"),
    "namespace": ("", "namespace of the perception node"),
    "with_sim": ("false", "also start sim_sensors (synthetic ZED + Boson)"),
}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _nodes(context, *args, **kwargs):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    plan = perception_plan(params_file=arg["params_file"], model=arg["model"],
                           use_sim_time=_truthy(arg["use_sim_time"]), namespace=arg["namespace"],
                           with_sim=_truthy(arg["with_sim"]))
    # The perception node ending (e.g. a model that cannot load) ends the launch: nothing is left to serve.
    return [Node(package=PACKAGE, executable=p.executable, name=p.name, namespace=p.namespace or None,
                 parameters=[*p.params_files, p.parameters], output="screen", emulate_tty=True,
                 **({"on_exit": Shutdown(reason=f"{p.name} exited")} if p.executable == "perception_node" else {}))
            for p in plan]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=doc)
                for name, (default, doc) in ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
