"""What `perception.launch.py` starts, as plain data, so the demo and tests start exactly the same processes.

`ros2 launch` turns the plan into launch_ros Node actions; where the launch
system is not installed (a venv), `to_command` turns it into the equivalent
`--ros-args` command line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "road_seg_ros"
#: Fast DDS reads its XML profile from here; the shipped one (config/) gives 720p images shared memory.
DDS_PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"
DDS_PROFILE_FILE = "fastdds_large_images.xml"


@dataclass
class ProcessSpec:
    executable: str
    name: str
    namespace: str = ""
    params_files: list[str] = field(default_factory=list)
    parameters: dict[str, object] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to the process's environment

    def to_command(self, bin_dir: str | None = None) -> list[str]:
        """The command line `ros2 run`/launch would use for this process."""
        exe = os.path.join(bin_dir, self.executable) if bin_dir else self.executable
        cmd = [exe, "--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            cmd += ["-r", f"__ns:=/{self.namespace.strip('/')}"]
        for f in self.params_files:
            cmd += ["--params-file", f]
        for k, v in self.parameters.items():
            cmd += ["-p", f"{k}:={_param_literal(v)}"]
        return cmd


def _param_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_literal(v) for v in value) + "]"
    if isinstance(value, str) and value == "":
        return "''"  # the value is parsed as YAML: an empty string must be spelled out
    return str(value)


def config_dir() -> Path:
    """config/ of a source checkout, or share/road_seg_ros/config of an install."""
    here = Path(__file__).resolve().parent.parent / "config"
    if here.is_dir():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except Exception as exc:  # pragma: no cover - depends on the install
        raise FileNotFoundError("cannot find road_seg_ros' config directory") from exc


def dds_env(profile: str | None = None) -> dict[str, str]:
    """Environment selecting a Fast DDS profile: None = the shipped one (config/fastdds_large_images.xml), "" or
    "none" = none; a profile already chosen in the environment (FASTRTPS_DEFAULT_PROFILES_FILE) is left alone."""
    if profile in ("", "none") or os.environ.get(DDS_PROFILE_ENV):
        return {}
    path = Path(profile) if profile else config_dir() / DDS_PROFILE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"DDS profile not found: {path}")
    return {DDS_PROFILE_ENV: str(path.resolve())}


def perception_plan(params_file: str = "", model: str = "", use_sim_time: bool = False, namespace: str = "",
                    with_sim: bool = False, sim_parameters: dict[str, object] | None = None,
                    node_parameters: dict[str, object] | None = None,
                    dds_profile: str | None = None) -> list[ProcessSpec]:
    """The processes of perception.launch.py for the given launch arguments (`dds_profile`: see `dds_env`)."""
    env = dds_env(dds_profile)
    params_file = params_file or str(config_dir() / "perception.yaml")
    node_params: dict[str, object] = {"use_sim_time": use_sim_time}
    if model:
        node_params["model"] = model
    node_params.update(node_parameters or {})
    plan = [ProcessSpec("perception_node", "road_seg", namespace, [params_file], node_params, dict(env))]
    if with_sim:
        sim_params: dict[str, object] = {"use_sim_time": use_sim_time}
        sim_params.update(sim_parameters or {})
        plan.insert(0, ProcessSpec("sim_sensors", "sim_sensors", "", [str(config_dir() / "sim_sensors.yaml")],
                                   sim_params, dict(env)))
    return plan
