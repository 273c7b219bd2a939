# TFLint configuration for every module and example under terraform/.
# Only the ruleset bundled inside the tflint binary is enabled, so linting
# never downloads a plugin (scripts/tools.sh builds tflint itself from the Go
# module proxy). Run: go test ./deploy_test -run TFLint.

config {
  # Examples call their module by a local path: lint through the call, so
  # inputs the example passes are checked against the module's variables.
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
