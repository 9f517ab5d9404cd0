-- The predictions of the most recently trained model for one (marketplace, category).
WITH latest AS (
    SELECT model_version, trained_at
    FROM ml_predictions
    WHERE marketplace = :marketplace AND category = :category
    ORDER BY trained_at DESC, model_version DESC
    LIMIT 1
)
SELECT
    p.prediction_date,
    p.model_type,
    p.predicted_validations,
    p.predicted_error_rate,
    p.lower_bound,
    p.upper_bound,
    p.confidence_level,
    p.actual_validations,
    p.actual_error_rate,
    p.is_anomaly,
    p.anomaly_score,
    p.model_version,
    p.trained_at
FROM ml_predictions p
JOIN latest l ON p.model_version = l.model_version
WHERE p.marketplace = :marketplace AND p.category = :category
ORDER BY p.prediction_date, p.model_type
