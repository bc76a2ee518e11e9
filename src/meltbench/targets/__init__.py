"""Where a model runs: this machine, a Linux device over SSH, an Android phone over adb."""
