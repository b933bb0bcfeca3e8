# Facet Guest Tools on Windows: copy the agent and register it as a service (needs Python 3.9+ on PATH).
# No Windows guest runs in Facet's tests: this script is kept small and is not exercised here.
param([string]$Target = "$env:ProgramFiles\Facet Guest Tools")
$ErrorActionPreference = "Stop"
New-Item -ItemType Directory -Force -Path $Target | Out-Null
Copy-Item -Recurse -Force "$PSScriptRoot\facet_guest_tools" $Target
$python = (Get-Command python).Source
$command = "`"$python`" -m facet_guest_tools run --config-dir `"$env:ProgramData\Facet Guest Tools`" --serial `"`""
New-Service -Name "FacetGuestTools" -DisplayName "Facet Guest Tools" -StartupType Automatic `
    -BinaryPathName "cmd /c set PYTHONPATH=$Target&& $command"
Start-Service FacetGuestTools
