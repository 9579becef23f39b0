<#
.SYNOPSIS
  Preflight gate for the Docker Compose deploy (ops/deploy.md #preflight), Windows entry point.

.DESCRIPTION
  Thin wrapper: runs `runbook-exec preflight` (cross-platform Python) and returns its exit code.
  0 = every check passed, 1 = a check failed (a missing env file is the intended failure), 2 = bad usage.
  Values of the env file are never printed.

.EXAMPLE
  powershell -ExecutionPolicy Bypass -File scripts/preflight_all.ps1 -EnvFile .env.prod -Tag 2026.01.14
#>
param(
    [string]$EnvFile = ".env.prod",
    [string]$Sample = ".env.sample",
    [string]$Compose = "docker-compose.prod.yml",
    [string]$Tag = $env:TAG,
    [switch]$Json
)

$argsList = @("preflight", "--env-file", $EnvFile, "--sample", $Sample, "--compose", $Compose)
if ($Tag) { $argsList += @("--tag", $Tag) }
if ($Json) { $argsList += "--json" }

$exe = Get-Command runbook-exec -ErrorAction SilentlyContinue
if ($exe) {
    & $exe.Source @argsList
} else {
    # Not on PATH (e.g. a venv that is not activated): use the module of the current Python.
    $python = Get-Command python -ErrorAction SilentlyContinue
    if (-not $python) { $python = Get-Command py -ErrorAction SilentlyContinue }
    if (-not $python) {
        Write-Error "runbook-exec and python were not found on PATH; install the project first (pip install .)"
        exit 2
    }
    & $python.Source -m runbook_exec.cli @argsList
}
exit $LASTEXITCODE
