// AI Trading Race on Azure: `azd up` provisions this (subscription scope: one resource group)
// and deploys function_app.py to it. What each app setting of local.settings.example.json
// becomes here is listed in infra/settings.json (tests/test_infra.py keeps the two equal).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name: names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every resource. Flex Consumption is not offered in every region.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the person running azd (Key Vault Secrets Officer: can set and rotate secrets). Empty: none.')
param principalId string = ''

@description('Object id of the GitHub Actions service principal (Key Vault Secrets User: deploy.yml reads the database URL to run migrations). Empty: none.')
param deployPrincipalId string = ''

@description('PostgreSQL administrator login.')
param postgresAdminLogin string = 'raceadmin'

@secure()
@minLength(12)
@description('PostgreSQL administrator password (kept in Key Vault, inside RACE_DATABASE_URL).')
param postgresAdminPassword string

@secure()
@minLength(24)
@description('RACE_ADMIN_KEY: the X-API-Key of the admin endpoints (kept in Key Vault).')
param raceAdminKey string

@secure()
@description('LLAMA_API_KEY (Groq or another OpenAI-compatible provider). Empty: Llama agents HOLD.')
param llamaApiKey string = ''

@secure()
@description('TOGETHER_API_KEY. Empty: unset.')
param togetherApiKey string = ''

@secure()
@description('OPENAI_API_KEY. Empty: unset.')
param openaiApiKey string = ''

@secure()
@description('AZURE_OPENAI_API_KEY. Empty: unset.')
param azureOpenaiApiKey string = ''

@secure()
@description('COINGECKO_API_KEY (Demo or Pro). Empty: the public keyless API.')
param coingeckoApiKey string = ''

@secure()
@description('REMOTE_ML_API_KEY of your model server. Empty: unset.')
param remoteMlApiKey string = ''

@description('RACE_CORS_ORIGINS: the dashboard origins, comma-separated. Empty: the app default (localhost only).')
param corsOrigins string = ''

@description('RACE_ASSETS: SYMBOL:coingecko-id pairs.')
param raceAssets string = 'BTC:bitcoin,ETH:ethereum'

@description('RACE_INGEST_SCHEDULE (NCRONTAB, UTC).')
param ingestSchedule string = '0 */5 * * * *'

@description('RACE_DECISION_SCHEDULE (NCRONTAB, UTC).')
param decisionSchedule string = '0 */15 * * * *'

@description('LLM_DAILY_BUDGET_USD per agent and UTC day ("none": no limit); the budget alerts read it too.')
param llmDailyBudgetUsd string = '1'

@description('COINGECKO_PLAN: public, demo or pro. Empty: the app infers it from the key.')
param coingeckoPlan string = ''

@description('AZURE_OPENAI_ENDPOINT. Empty: unset.')
param azureOpenaiEndpoint string = ''

@description('AZURE_OPENAI_DEPLOYMENT. Empty: unset.')
param azureOpenaiDeployment string = ''

@description('REMOTE_ML_URL of your model server. Empty: unset.')
param remoteMlUrl string = ''

@description('RACE_BACKFILL_QUEUE: the Storage queue the template creates for backfill jobs.')
param backfillQueueName string = 'race-backfill'

@description('E-mail address the alerts go to. Empty: alerts fire in the portal only.')
param alertEmail string = ''

@description('PostgreSQL Flexible Server compute size (Burstable B1ms: 1 vCore, 2 GiB).')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL storage (GiB; 32 is the smallest).')
param postgresStorageSizeGB int = 32

@description('Log Analytics daily ingestion cap (GB); a runaway log volume stops there.')
param logDailyCapGb int = 1

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'race-app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    principalId: principalId
    deployPrincipalId: deployPrincipalId
    postgresAdminLogin: postgresAdminLogin
    postgresAdminPassword: postgresAdminPassword
    raceAdminKey: raceAdminKey
    llamaApiKey: llamaApiKey
    togetherApiKey: togetherApiKey
    openaiApiKey: openaiApiKey
    azureOpenaiApiKey: azureOpenaiApiKey
    coingeckoApiKey: coingeckoApiKey
    remoteMlApiKey: remoteMlApiKey
    corsOrigins: corsOrigins
    raceAssets: raceAssets
    ingestSchedule: ingestSchedule
    decisionSchedule: decisionSchedule
    llmDailyBudgetUsd: llmDailyBudgetUsd
    coingeckoPlan: coingeckoPlan
    azureOpenaiEndpoint: azureOpenaiEndpoint
    azureOpenaiDeployment: azureOpenaiDeployment
    remoteMlUrl: remoteMlUrl
    backfillQueueName: backfillQueueName
    postgresSkuName: postgresSkuName
    postgresStorageSizeGB: postgresStorageSizeGB
    logDailyCapGb: logDailyCapGb
  }
}

module alerts 'alerts.bicep' = {
  name: 'race-alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    applicationInsightsId: app.outputs.applicationInsightsId
    alertEmail: alertEmail
    llmDailyBudgetUsd: llmDailyBudgetUsd
  }
}

// Read by azd (kept in the environment's .env) and by .github/workflows/deploy.yml.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = app.outputs.functionAppUrl
output AZURE_KEY_VAULT_NAME string = app.outputs.keyVaultName
output AZURE_POSTGRES_SERVER_NAME string = app.outputs.postgresServerName
output AZURE_POSTGRES_HOST string = app.outputs.postgresHost
output APPLICATIONINSIGHTS_NAME string = app.outputs.applicationInsightsName
