// Alerts on what the app really emits to Application Insights (race/telemetry.py,
// race/engine.py, the Functions host's request telemetry):
//   function failures  host requests with success == false (metric requests/failed)
//   degraded agent     race.engine WARNING "agent N is degraded: more than … fallback HOLDs"
//   stale candles      metric race.candles.ingested (race/telemetry.py) adding up to 0
//   LLM budget 80 %    spans race.agent.decide: customDimensions.cost_usd summed per agent
//                      since 00:00 UTC against LLM_DAILY_BUDGET_USD
//   LLM budget 100 %   metric race.fallbacks with reason "budget" (the app's own HOLD when a
//                      budget is spent or the next call would exceed it)

param location string
param tags object
param resourceToken string
param applicationInsightsId string
param alertEmail string
param llmDailyBudgetUsd string

// "none", "off" or empty: no budget, so no budget alerts (race/settings.py _none_if_blank).
var budgeted = !contains(['', 'none', 'off'], toLower(trim(llmDailyBudgetUsd)))

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-race-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'race'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Every invocation (timer, queue, HTTP) is a request in Application Insights.
resource functionFailures 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'race-function-failures-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'A function invocation failed (timer, queue or HTTP) in the last 15 minutes.'
    severity: 1
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'failedRequests'
          metricNamespace: 'microsoft.insights/components'
          metricName: 'requests/failed'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Count'
        }
      ]
    }
    autoMitigate: true
    actions: [{ actionGroupId: actionGroup.id }]
  }
}

var logAlerts = [
  {
    name: 'race-degraded-agent'
    description: 'An agent became degraded: most of its recent decisions were fallback HOLDs (check its provider).'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: 'traces | where message contains "is degraded: more than" | extend agent = extract(@"agent (\\d+) is degraded", 1, message) | summarize events = count() by agent'
    measure: 'events'
    aggregation: 'Total'
    operator: 'GreaterThan'
    threshold: 0
    dimension: 'agent'
    enabled: true
  }
  {
    name: 'race-stale-candles'
    description: 'No candle stored for 3 hours (hourly candles; /api/health degrades after RACE_HEALTH_MAX_CANDLE_AGE, 2 h).'
    severity: 1
    frequency: 'PT30M'
    window: 'PT3H'
    query: 'union (print inserted = 0.0), (customMetrics | where name == "race.candles.ingested" | project inserted = valueSum) | summarize inserted = sum(inserted)'
    measure: 'inserted'
    aggregation: 'Total'
    operator: 'LessThan'
    threshold: 1
    dimension: ''
    enabled: true
  }
  {
    name: 'race-llm-budget-80'
    description: 'An agent has spent 80 % of LLM_DAILY_BUDGET_USD today (UTC).'
    severity: 3
    frequency: 'PT1H'
    window: 'P1D'
    query: 'let budget = todouble("${llmDailyBudgetUsd}"); dependencies | where name == "race.agent.decide" and timestamp >= startofday(now()) | extend agent = tostring(customDimensions.agent), cost = todouble(customDimensions.cost_usd) | summarize spent = sum(cost) by agent | where spent >= 0.8 * budget'
    measure: 'spent'
    aggregation: 'Maximum'
    operator: 'GreaterThan'
    threshold: 0
    dimension: 'agent'
    enabled: budgeted
  }
  {
    name: 'race-llm-budget-100'
    description: 'An LLM agent is holding because its daily budget is spent (fallback reason "budget").'
    severity: 2
    frequency: 'PT15M'
    window: 'PT1H'
    query: 'customMetrics | where name == "race.fallbacks" and tostring(customDimensions.reason) == "budget" | summarize holds = sum(valueSum) by provider = tostring(customDimensions.provider), model = tostring(customDimensions.model)'
    measure: 'holds'
    aggregation: 'Total'
    operator: 'GreaterThan'
    threshold: 0
    dimension: 'model'
    enabled: budgeted
  }
]

resource queryAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for alert in logAlerts: {
    name: '${alert.name}-${resourceToken}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: alert.name
      description: alert.description
      severity: alert.severity
      enabled: alert.enabled
      evaluationFrequency: alert.frequency
      windowSize: alert.window
      scopes: [applicationInsightsId]
      // A new Application Insights has no customMetrics or dependencies rows yet: the
      // queries are valid, but their tables appear only with the app's first telemetry.
      skipQueryValidation: true
      criteria: {
        allOf: [
          {
            query: alert.query
            timeAggregation: alert.aggregation
            metricMeasureColumn: alert.measure
            operator: alert.operator
            threshold: alert.threshold
            dimensions: empty(alert.dimension) ? [] : [
              {
                name: alert.dimension
                operator: 'Include'
                values: ['*']
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: { actionGroups: [actionGroup.id] }
    }
  }
]

output actionGroupId string = actionGroup.id
