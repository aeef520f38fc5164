// The race's resources, in one resource group: Storage (host + backfill queue), Flex
// Consumption Function App (Python 3.11, system-assigned identity), PostgreSQL Flexible
// Server, Key Vault (RBAC) holding every secret, Log Analytics + Application Insights.
//
// Key Vault references: the app settings below that hold secrets are
// `@Microsoft.KeyVault(VaultName=…;SecretName=…)` references, resolved by the platform
// with the app's system-assigned identity. Documented for App Service and Azure Functions
// in https://learn.microsoft.com/azure/app-service/app-service-key-vault-references (no
// hosting plan excluded); the Flex Consumption plan's list of unsupported features
// (https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#considerations)
// does not name them, so the plan stays Flex Consumption. Only a real deployment proves the
// references resolve: docs/deploy.md says how to check.

param location string
param tags object
param resourceToken string
param principalId string
param deployPrincipalId string
param postgresAdminLogin string
@secure()
param postgresAdminPassword string
@secure()
param raceAdminKey string
@secure()
param llamaApiKey string
@secure()
param togetherApiKey string
@secure()
param openaiApiKey string
@secure()
param azureOpenaiApiKey string
@secure()
param coingeckoApiKey string
@secure()
param remoteMlApiKey string
param corsOrigins string
param raceAssets string
param ingestSchedule string
param decisionSchedule string
param llmDailyBudgetUsd string
param coingeckoPlan string
param azureOpenaiEndpoint string
param azureOpenaiDeployment string
param remoteMlUrl string
param backfillQueueName string
param postgresSkuName string
param postgresStorageSizeGB int
param logDailyCapGb int

@description('Flex Consumption instance memory (MB): 2048 is the default size.')
param instanceMemoryMB int = 2048

// Each instance keeps its own database pool and a B1ms server admits 35 user connections:
// a small ceiling (the timers are one instance each; HTTP scales within it).
@description('Most instances the app scales out to (each holds its own database pool).')
param maximumInstanceCount int = 10

var functionAppName = 'func-race-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var databaseName = 'race'

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
}

// ---------------------------------------------------------------- monitoring
resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-race-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
    workspaceCapping: { dailyQuotaGb: logDailyCapGb }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-race-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
  }
}

// ---------------------------------------------------------------- storage
// The host's storage (timer leases, deployment package) and the backfill queue; reached
// with the app's identity only: shared keys are disabled.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'strace${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource backfillQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: backfillQueueName
}

// ---------------------------------------------------------------- database
resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: 'psql-race-${resourceToken}'
  location: location
  tags: tags
  sku: {
    name: postgresSkuName
    tier: 'Burstable'
  }
  properties: {
    version: '16'
    administratorLogin: postgresAdminLogin
    administratorLoginPassword: postgresAdminPassword
    storage: { storageSizeGB: postgresStorageSizeGB }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: { mode: 'Disabled' }
    network: { publicNetworkAccess: 'Enabled' }
    authConfig: {
      activeDirectoryAuth: 'Disabled'
      passwordAuth: 'Enabled'
    }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

// Flex Consumption has no fixed outbound addresses: the server admits Azure's (0.0.0.0 is
// the platform's "Azure services" rule). TLS is required (sslmode=require below).
resource allowAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: postgres
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

var databaseUrl = 'postgresql+psycopg://${postgresAdminLogin}:${uriComponent(postgresAdminPassword)}@${postgres.properties.fullyQualifiedDomainName}:5432/${databaseName}?sslmode=require'

// ---------------------------------------------------------------- key vault
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-race-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

// Every key the app reads from a parameter: app setting → Key Vault secret. An optional key
// left empty stores no secret and sets no app setting (the app's "unset" behaviour applies).
// (Only deploy-time values here: the loop below must be countable when the deployment
// starts, so the database URL, known only once the server exists, has a resource of its own.)
var secretSettings = [
  { setting: 'RACE_ADMIN_KEY', secret: 'race-admin-key', value: raceAdminKey }
  { setting: 'LLAMA_API_KEY', secret: 'llama-api-key', value: llamaApiKey }
  { setting: 'TOGETHER_API_KEY', secret: 'together-api-key', value: togetherApiKey }
  { setting: 'OPENAI_API_KEY', secret: 'openai-api-key', value: openaiApiKey }
  { setting: 'AZURE_OPENAI_API_KEY', secret: 'azure-openai-api-key', value: azureOpenaiApiKey }
  { setting: 'COINGECKO_API_KEY', secret: 'coingecko-api-key', value: coingeckoApiKey }
  { setting: 'REMOTE_ML_API_KEY', secret: 'remote-ml-api-key', value: remoteMlApiKey }
]
var storedSecrets = filter(secretSettings, s => !empty(s.value))

resource secrets 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [
  for s in storedSecrets: {
    parent: vault
    name: s.secret
    properties: { value: s.value }
  }
]

// RACE_DATABASE_URL, with the password in it.
var databaseUrlSetting = { setting: 'RACE_DATABASE_URL', secret: 'race-database-url', value: databaseUrl }

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: databaseUrlSetting.secret
  properties: { value: databaseUrlSetting.value }
}

// The password on its own too, for an operator's psql session.
resource postgresPasswordSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'postgres-admin-password'
  properties: { value: postgresAdminPassword }
}

// ---------------------------------------------------------------- function app
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-race-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      // No platform CORS: the app's RACE_CORS_ORIGINS answers (README "On Azure Functions").
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, functionApp.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
  }
}

resource deploySecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployPrincipalId)) {
  name: guid(vault.id, deployPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: deployPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- app settings
// Set by the template (infra/settings.json: "template").
var templateSettings = {
  AzureWebJobsStorage__accountName: storage.name
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  RACE_ALLOW_SQLITE_ON_HOST: 'false'
  RACE_QUEUE_CONNECTION: 'AzureWebJobsStorage'
  RACE_LOG_FORMAT: 'json'
  RACE_ML_ARTIFACT_DIR: '/tmp/race-ml'
}

// Taken from parameters (infra/settings.json: "parameter"); an empty one stays unset.
var parameterSettings = {
  RACE_CORS_ORIGINS: corsOrigins
  RACE_ASSETS: raceAssets
  RACE_INGEST_SCHEDULE: ingestSchedule
  RACE_DECISION_SCHEDULE: decisionSchedule
  LLM_DAILY_BUDGET_USD: llmDailyBudgetUsd
  COINGECKO_PLAN: coingeckoPlan
  AZURE_OPENAI_ENDPOINT: azureOpenaiEndpoint
  AZURE_OPENAI_DEPLOYMENT: azureOpenaiDeployment
  REMOTE_ML_URL: remoteMlUrl
  RACE_BACKFILL_QUEUE: backfillQueueName
}

var secretReferences = toObject(
  concat([databaseUrlSetting], storedSecrets),
  s => s.setting,
  s => '@Microsoft.KeyVault(VaultName=${vault.name};SecretName=${s.secret})'
)

// A resource of its own, after the role assignments: the identity exists only once the
// site does, and the references resolve only once it may read the vault.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(
    templateSettings,
    toObject(filter(items(parameterSettings), p => !empty(p.value)), p => p.key, p => p.value),
    secretReferences
  )
  dependsOn: [
    appBlobOwner
    appQueueContributor
    appSecretsUser
    secrets
    databaseUrlSecret
    backfillQueue
    deploymentContainer
    database
    allowAzureServices
  ]
}

output functionAppName string = functionApp.name
output functionAppUrl string = 'https://${functionApp.properties.defaultHostName}'
output keyVaultName string = vault.name
output postgresServerName string = postgres.name
output postgresHost string = postgres.properties.fullyQualifiedDomainName
output applicationInsightsId string = appInsights.id
output applicationInsightsName string = appInsights.name
